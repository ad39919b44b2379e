# agentd %post. $1: 1 on first installation, 2 or more on upgrade.
# Enable agentd.service on first installation (systemctl enable works without a
# running systemd: containers, image builds) and start it there once agentd is
# configured. Upgrades are restarted by the old package's %postun.
if [ "$1" -eq 1 ] && command -v systemctl >/dev/null 2>&1; then
  systemctl enable agentd.service >/dev/null 2>&1 || :
fi
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || :
  if [ "$1" -eq 1 ]; then
    if /usr/sbin/agentd --check-config >/dev/null 2>&1; then
      systemctl start agentd.service >/dev/null 2>&1 || :
    else
      echo "agentd: enabled but not started: set the hub in /etc/default/horizon and" >&2
      echo "agentd: AGENTD_TOKEN_FILE and the commands in /etc/agentd/agentd.conf" >&2
      echo "agentd: (agentd --check-config shows what is missing), then: systemctl start agentd" >&2
    fi
  fi
fi
# One executor (anax-coexistence.md §3.1): while agentd is configured, anax's
# cron executor is kept aside (cron-guard; also by agentd.service at each start).
/usr/libexec/agentd/cron-guard disable >/dev/null 2>&1 || :
exit 0

# The horizon package's %post rewrites its cron file on every install: keep it
# aside again afterwards. (CPack puts this file into %post; the line below opens
# a section of its own.)
%triggerin -- horizon
/usr/libexec/agentd/cron-guard disable >/dev/null 2>&1 || :
exit 0
