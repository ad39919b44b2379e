# agentd %postun. $1: 0 after removal, 1 or more after an upgrade (this is the
# old package's scriptlet, run once the new files are in place).
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || :
  if [ "$1" -ge 1 ]; then
    # Restart only a running agentd, on the new version.
    systemctl try-restart agentd.service >/dev/null 2>&1 || :
  fi
fi
exit 0
