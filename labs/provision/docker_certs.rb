# The Vagrant lab's Docker TLS certificates, made once on the machine that runs vagrant,
# as docker-machine made its hosts' on the machine you typed docker-machine on. The
# Vagrantfile requires this file; its Ruby (Vagrant's own) has OpenSSL built in, so
# nothing else needs to be installed there.
#
# The same certificates, names and files as the local lab's (labs/docker_tls.py, which
# the tests hold this file to): under DIR (.vagrant/discovery-lab/docker-certs)
#
#   certs/              ca.pem ca-key.pem cert.pem key.pem   the lab's CA, the learner's
#   machines/HOST/      ca.pem cert.pem key.pem              (a copy of the learner's)
#                       server.pem server-key.pem            HOST's dockerd: SAN its name,
#                                                            localhost, its IP, 127.0.0.1
#
# ECDSA P-256 keys, 1080 days from 5 minutes ago, directories 0700, keys 0600. Kept:
# only a missing file is made again (delete machines/HOST/server*.pem, then
# `vagrant provision HOST`, for a new server certificate). The CA key never leaves
# this machine; each VM gets its own server files and the learner's client files.
#
#   ruby -r ./labs/provision/docker_certs -e 'DiscoveryLabDockerCerts.ensure(DIR, {"host1" => "192.168.56.11"})'

require "fileutils"
require "openssl"

module DiscoveryLabDockerCerts
  VALIDITY_DAYS = 1080
  BACKDATE_S = 300
  ORGANIZATION = "discovery-lab"
  LAB_NAME = "lab"

  module_function

  def ensure(dir, hosts)
    certs = File.join(dir, "certs")
    private_dir(certs)
    ca_cert_path, ca_key_path = File.join(certs, "ca.pem"), File.join(certs, "ca-key.pem")
    client_cert_path, client_key_path = File.join(certs, "cert.pem"), File.join(certs, "key.pem")
    unless File.exist?(ca_cert_path) && File.exist?(ca_key_path)
      key = OpenSSL::PKey::EC.generate("prime256v1")
      cert = issue("discovery-lab #{LAB_NAME} CA", "ca", key, nil, key)
      save(ca_cert_path, ca_key_path, cert, key)
      File.delete(client_cert_path) if File.exist?(client_cert_path)
    end
    ca_cert = OpenSSL::X509::Certificate.new(File.read(ca_cert_path))
    ca_key = OpenSSL::PKey.read(File.read(ca_key_path))
    unless File.exist?(client_cert_path) && File.exist?(client_key_path)
      key = OpenSSL::PKey::EC.generate("prime256v1")
      cert = issue("discovery-lab #{LAB_NAME} client", "client", key, ca_cert, ca_key)
      save(client_cert_path, client_key_path, cert, key)
    end
    private_dir(File.join(dir, "machines"))
    hosts.each do |name, ip|
      machine = File.join(dir, "machines", name)
      private_dir(machine)
      server_cert, server_key = File.join(machine, "server.pem"), File.join(machine, "server-key.pem")
      unless File.exist?(server_cert) && File.exist?(server_key)
        key = OpenSSL::PKey::EC.generate("prime256v1")
        sans = ["DNS:#{name}", "DNS:localhost", "IP:#{ip}", "IP:127.0.0.1"]
        save(server_cert, server_key, issue(name, "server", key, ca_cert, ca_key, sans), key)
      end
      write(File.join(machine, "ca.pem"), File.read(ca_cert_path), 0o644)
      write(File.join(machine, "cert.pem"), File.read(client_cert_path), 0o644)
      write(File.join(machine, "key.pem"), File.read(client_key_path), 0o600)
    end
  end

  def issue(common_name, usage, key, ca_cert, ca_key, sans = [])
    cert = OpenSSL::X509::Certificate.new
    cert.version = 2 # X.509 v3
    cert.serial = OpenSSL::BN.rand(159)
    cert.subject = OpenSSL::X509::Name.new([["O", ORGANIZATION], ["CN", common_name]])
    cert.issuer = ca_cert ? ca_cert.subject : cert.subject
    cert.public_key = key
    cert.not_before = Time.now - BACKDATE_S
    cert.not_after = cert.not_before + VALIDITY_DAYS * 86_400
    extensions = OpenSSL::X509::ExtensionFactory.new
    extensions.subject_certificate = cert
    extensions.issuer_certificate = ca_cert || cert
    cert.add_extension(extensions.create_extension("subjectKeyIdentifier", "hash", false))
    if usage == "ca"
      cert.add_extension(extensions.create_extension("basicConstraints", "CA:TRUE,pathlen:0", true))
      cert.add_extension(
        extensions.create_extension("keyUsage", "digitalSignature,keyCertSign,cRLSign", true)
      )
    else
      cert.add_extension(extensions.create_extension("basicConstraints", "CA:FALSE", true))
      cert.add_extension(extensions.create_extension("keyUsage", "digitalSignature", true))
      purpose = usage == "server" ? "serverAuth" : "clientAuth"
      cert.add_extension(extensions.create_extension("extendedKeyUsage", purpose, false))
      cert.add_extension(extensions.create_extension("authorityKeyIdentifier", "keyid:always", false))
    end
    cert.add_extension(extensions.create_extension("subjectAltName", sans.join(","), false)) unless sans.empty?
    cert.sign(ca_key, OpenSSL::Digest.new("SHA256"))
    cert
  end

  def private_dir(path)
    FileUtils.mkdir_p(path)
    File.chmod(0o700, path)
  end

  def write(path, text, mode)
    temporary = "#{path}.tmp"
    File.delete(temporary) if File.exist?(temporary)
    File.open(temporary, File::WRONLY | File::CREAT | File::EXCL, mode) { |file| file.write(text) }
    File.chmod(mode, temporary)
    File.rename(temporary, path)
  end

  def save(cert_path, key_path, cert, key)
    write(key_path, key.to_pem, 0o600)
    write(cert_path, cert.to_pem, 0o644)
  end
end
