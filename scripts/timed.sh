#!/bin/sh
# timed.sh CMD...: CMD in a session of its own whose autogroup has nice -20, so that a timed run
# under the CPU lock gets the cores over other sessions' nice-19 work (with autogroups, a process's
# nice only ranks it within its own session).
exec setsid -w sh -c 'echo -20 > /proc/$$/autogroup; exec nice -n 0 "$@"' sh "$@"
