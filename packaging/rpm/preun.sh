# agentd %preun. $1: 0 on removal, 1 or more on upgrade.
# On removal stop and disable agentd; the configuration (%config(noreplace):
# an edited file is kept as .rpmsave) and /var/lib/agentd stay.
if [ "$1" -eq 0 ]; then
  # Without agentd, anax's own upgrade executor is back in charge.
  /usr/libexec/agentd/cron-guard restore >/dev/null 2>&1 || :
  if [ -d /run/systemd/system ]; then
    systemctl stop agentd.service agentd-rollback.service >/dev/null 2>&1 || :
  fi
  if command -v systemctl >/dev/null 2>&1; then
    systemctl --no-reload disable agentd.service >/dev/null 2>&1 || :
  fi
fi
exit 0
