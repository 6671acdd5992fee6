# The Vagrant lab's TLS certificates, Docker's and etcd's, made once on the machine that
# runs vagrant, as docker-machine made its hosts' on the machine you typed docker-machine
# on. The Vagrantfile requires this file; its Ruby (Vagrant's own) has OpenSSL built in,
# so nothing else needs to be installed there.
#
# The same certificates, names and files as the local lab's (labs/docker_tls.py and
# labs/etcd_tls.py, which the tests hold this file to): under DIR (.vagrant/discovery-lab/tls)
#
#   certs/              ca.pem ca-key.pem cert.pem key.pem   the lab's CA, the learner's
#   machines/HOST/      ca.pem cert.pem key.pem              (a copy of the learner's)
#                       server.pem server-key.pem            HOST's dockerd: SAN its name,
#                                                            localhost, its IP, 127.0.0.1
#   certs/etcd/         etcdN.pem etcdN-key.pem              an etcd member's, for clients
#                                                            and peers: SAN as a server's
#                       COMPONENT.pem COMPONENT-key.pem      a client of etcd: the Common
#                                                            Name is its etcd user (root,
#                                                            network-agent, ..., learner)
#
# One CA signs them all. ECDSA P-256 keys, 1080 days from 5 minutes ago, directories 0700,
# keys 0600. Kept: only a missing file is made again (delete machines/HOST/server*.pem,
# or certs/etcd/NAME*.pem, then `vagrant provision HOST`, for a new certificate). The CA
# key never leaves this machine; each VM gets only the files it uses (etcd_files).
#
#   ruby -r ./labs/provision/lab_certs -e 'DiscoveryLabCerts.ensure_docker(DIR, {"host1" => "192.168.56.11"})'
#   ruby -r ./labs/provision/lab_certs -e 'DiscoveryLabCerts.ensure_etcd(DIR, {"etcd1" => "192.168.56.11"})'

require "fileutils"
require "openssl"

module DiscoveryLabCerts
  VALIDITY_DAYS = 1080
  BACKDATE_S = 300
  ORGANIZATION = "discovery-lab"
  LAB_NAME = "lab"
  # etcd's users, one per component (labs/etcd_tls.py COMPONENTS; a test holds them equal).
  ETCD_COMPONENTS = %w[root network-agent services-agent dns map learner].freeze
  # What every VM's etcd clients use: not root (the lab's own, only where it sets etcd up).
  VM_COMPONENTS = %w[network-agent services-agent dns map learner].freeze

  module_function

  # The lab's CA and the learner's client certificate (docker-machine's certs/): made once.
  def ensure_ca(dir)
    certs = File.join(dir, "certs")
    private_dir(certs)
    ca_cert_path, ca_key_path = File.join(certs, "ca.pem"), File.join(certs, "ca-key.pem")
    client_cert_path, client_key_path = File.join(certs, "cert.pem"), File.join(certs, "key.pem")
    unless File.exist?(ca_cert_path) && File.exist?(ca_key_path)
      key = OpenSSL::PKey::EC.generate("prime256v1")
      cert = issue("discovery-lab #{LAB_NAME} CA", "ca", key, nil, key)
      save(ca_cert_path, ca_key_path, cert, key)
      # Signed by a CA that is gone: made again below.
      File.delete(client_cert_path) if File.exist?(client_cert_path)
      stale = Dir.glob(File.join(certs, "etcd", "*.pem")) + Dir.glob(File.join(dir, "machines", "*", "server*.pem"))
      stale.each { |path| File.delete(path) }
    end
    ca_cert = OpenSSL::X509::Certificate.new(File.read(ca_cert_path))
    ca_key = OpenSSL::PKey.read(File.read(ca_key_path))
    unless File.exist?(client_cert_path) && File.exist?(client_key_path)
      key = OpenSSL::PKey::EC.generate("prime256v1")
      cert = issue("discovery-lab #{LAB_NAME} client", "client", key, ca_cert, ca_key)
      save(client_cert_path, client_key_path, cert, key)
    end
    [ca_cert, ca_key]
  end

  # Docker's: a server certificate per host (name => IP) and the learner's files beside it.
  def ensure_docker(dir, hosts)
    ca_cert, ca_key = ensure_ca(dir)
    certs = File.join(dir, "certs")
    private_dir(File.join(dir, "machines"))
    hosts.each do |name, ip|
      machine = File.join(dir, "machines", name)
      private_dir(machine)
      server_cert, server_key = File.join(machine, "server.pem"), File.join(machine, "server-key.pem")
      unless File.exist?(server_cert) && File.exist?(server_key)
        key = OpenSSL::PKey::EC.generate("prime256v1")
        save(server_cert, server_key, issue(name, "server", key, ca_cert, ca_key, server_sans(name, ip)), key)
      end
      write(File.join(machine, "ca.pem"), File.read(File.join(certs, "ca.pem")), 0o644)
      write(File.join(machine, "cert.pem"), File.read(File.join(certs, "cert.pem")), 0o644)
      write(File.join(machine, "key.pem"), File.read(File.join(certs, "key.pem")), 0o600)
    end
  end

  # etcd's: a certificate per member (name => IP), serving clients and peers and a client of
  # its peers, and one per component, whose Common Name is its etcd user.
  def ensure_etcd(dir, members, components = ETCD_COMPONENTS)
    ca_cert, ca_key = ensure_ca(dir)
    etcd = File.join(dir, "certs", "etcd")
    private_dir(etcd)
    wanted = members.map { |name, ip| [name, "peer", server_sans(name, ip)] }
    wanted += components.map { |component| [component, "client", []] }
    wanted.each do |name, usage, sans|
      cert, key_path = File.join(etcd, "#{name}.pem"), File.join(etcd, "#{name}-key.pem")
      next if File.exist?(cert) && File.exist?(key_path)

      key = OpenSSL::PKey::EC.generate("prime256v1")
      save(cert, key_path, issue(name, usage, key, ca_cert, ca_key, sans), key)
    end
  end

  # The etcd files one VM gets, as [source path, file name]: the CA, its member's (if it
  # runs one), every VM component's, and root's only where the lab sets etcd up.
  def etcd_files(dir, member, with_root)
    names = (member ? [member] : []) + VM_COMPONENTS + (with_root ? ["root"] : [])
    files = [[File.join(dir, "certs", "ca.pem"), "ca.pem"]]
    names.each do |name|
      %W[#{name}.pem #{name}-key.pem].each { |file| files << [File.join(dir, "certs", "etcd", file), file] }
    end
    files
  end

  def server_sans(name, ip)
    ["DNS:#{name}", "DNS:localhost", "IP:#{ip}", "IP:127.0.0.1"]
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
      # peer: an etcd member, a server to clients and peers and a client of its peers
      purpose = { "server" => "serverAuth", "client" => "clientAuth",
                  "peer" => "serverAuth,clientAuth" }.fetch(usage)
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
