#!/bin/sh
# The front page: ask the API by its service name, show who answered.
# httpd runs this for "/" (index.cgi is busybox httpd's directory index).
answer=$(wget -qO- -T 3 "${API_URL:-http://api/cgi-bin/api}" 2>&1) \
    || answer="no answer from ${API_URL:-http://api/cgi-bin/api}: ${answer}"
printf 'Content-Type: text/plain\r\n\r\n'
echo "front: container $(hostname) on ${LAB_HOST:-unknown}"
echo "api:   ${answer}"
