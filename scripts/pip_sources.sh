# Sourced by scripts/dev.sh and scripts/lock.sh.
# pip's find-links / index-url / extra-index-url (config files and PIP_* variables) as uv flags.
pip_sources() {
  .venv/bin/pip config list 2>/dev/null | python3 -c '
import re, sys
flags = {"find-links": "--find-links", "index-url": "--index-url", "extra-index-url": "--extra-index-url"}
seen = []
for line in sys.stdin:
    m = re.match(r"^[^.]*\.([a-z-]+)=(.*)$", line.strip())
    if m and m.group(1) in flags:
        for value in m.group(2).strip("\x27\"").split():
            if (flags[m.group(1)], value) not in seen:
                seen.append((flags[m.group(1)], value))
print(" ".join(f"{flag} {value}" for flag, value in seen))
'
}
