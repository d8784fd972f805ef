#!/bin/sh
# Runs inside the test VM of image/tests/vm-boot.sh, as a unit started after
# picket-agent: prints on the serial console what only the VM can see, one
# "PICKET-VMTEST <what> <value>" line each, then the status LED as the
# kernel reports it, ten times a second.
say() { echo "PICKET-VMTEST $*" >/dev/ttyAMA0; }

i=0
while [ $i -lt 300 ] && ! systemctl -q is-active picket-agent; do
    sleep 1
    i=$((i + 1))
done
pid=$(systemctl show -p MainPID --value picket-agent)
say "agent $(systemctl is-active picket-agent) restarts=$(systemctl show -p NRestarts --value picket-agent)"
say "unit $(systemctl show -p FragmentPath --value picket-agent) $(systemctl is-enabled picket-agent)"
say "config $(stat -c '%a %U %G' /etc/picket/agent.toml)"
say "firstboot $(test -e /boot/firmware/picket.toml && echo present || echo gone) on $(findmnt -n -o FSTYPE /boot/firmware)"
say "capbnd $(sed -n 's/^CapBnd:[[:space:]]*//p' "/proc/$pid/status")"
say "security $(systemd-analyze security picket-agent 2>/dev/null | tail -n 1)"
say "hotdir $(test -d /run/picket/queue-hot && echo present || echo missing)"
# The collector, when the test installed it: set up as its unit's header
# says (systemd-sysusers, then start).
if [ -x /usr/bin/picket-collector ]; then
    systemd-sysusers
    systemctl daemon-reload
    systemctl start picket-collector
    sleep 2
    say "collector $(systemctl is-active picket-collector)"
    say "cstatus $(systemctl status --no-pager -n 5 picket-collector 2>&1 | tail -n 5 | tr '\n' '|')"
    say "csecurity $(systemd-analyze security picket-collector 2>/dev/null | tail -n 1)"
fi
# What a technician's `picket-agent status` says once connected.
i=0
while [ $i -lt 120 ] && ! picket-agent status 2>/dev/null | grep -q 'connected for'; do
    sleep 1
    i=$((i + 1))
done
say "led $(picket-agent status 2>/dev/null | sed -n 's/^LED: *//p')"
# The status LED as the kernel has it: the GPIO line (debugfs), and the
# USB keyboard's Caps Lock LED (LED class, for the sysfs backend).
kbd=/sys/class/leds/input1::capslock
while :; do
    grep picket-agent /sys/kernel/debug/gpio | sed 's/^/PICKET-VMTEST gpio /' >/dev/ttyAMA0
    if [ -e $kbd/brightness ]; then
        say "sysfs brightness $(cat $kbd/brightness) trigger $(grep -o '\[[^]]*\]' $kbd/trigger)"
    fi
    sleep 0.1
done
