#!/bin/sh
# summary.sh LOG.tsv... - the last evaluation of each ssm-train log: steps, loss, accuracy, time.
printf '%-22s %8s %10s %10s %10s\n' log step eval_loss accuracy time_s
for f in "$@"; do
    [ -e "$f" ] || { printf '%-22s (missing)\n' "$f"; continue; }
    awk -F'\t' -v f="$f" '$2 == "eval" { s = $1; l = $3; a = $4; t = $7 }
        END { if (s == "") printf "%-22s (no evaluation yet)\n", f;
              else printf "%-22s %8d %10.4f %9.2f%% %10.0f\n", f, s, l, 100 * a, t }' "$f"
done
