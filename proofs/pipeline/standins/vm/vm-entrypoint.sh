#!/bin/sh
# sshd of the stand-in VM: key login for root only, on 127.0.0.1:$SSH_PORT,
# host key and authorized_keys from /run/vm (mounted by the pipeline check).
# No PAM: pam_loginuid refuses logins in a container.
set -eu
mkdir -p /run/sshd
exec /usr/sbin/sshd -D -e \
  -o "ListenAddress=127.0.0.1:${SSH_PORT:?}" \
  -o HostKey=/run/vm/ssh_host_ed25519_key \
  -o AuthorizedKeysFile=/run/vm/authorized_keys \
  -o UsePAM=no -o PasswordAuthentication=no -o KbdInteractiveAuthentication=no \
  -o PermitRootLogin=prohibit-password -o PidFile=none
