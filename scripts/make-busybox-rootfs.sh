#!/usr/bin/env bash
# Make a busybox root filesystem offline from Debian's busybox-static (installed when
# missing). Usage: scripts/make-busybox-rootfs.sh DIR
# DIR receives bin/busybox plus one link per applet, /etc/passwd and /etc/group with root
# and nobody, and the empty directories a container expects.
set -euo pipefail

dest=${1:?usage: $0 DIR}
if [ ! -x /bin/busybox ] || ! dpkg -s busybox-static >/dev/null 2>&1; then
    echo "installing busybox-static..." >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
fi
mkdir -p "$dest"/{bin,sbin,etc,proc,sys,dev,tmp,root,home,var,usr/bin,usr/sbin}
chmod 1777 "$dest/tmp"
cp /bin/busybox "$dest/bin/busybox"
# One hard link per applet, as the busybox package would install them.
for applet in $("$dest/bin/busybox" --list); do
    [ -e "$dest/bin/$applet" ] || ln "$dest/bin/busybox" "$dest/bin/$applet"
done
cat > "$dest/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat > "$dest/etc/group" <<'GROUP'
root:x:0:
daemon:x:1:
tty:x:5:
staff:x:50:nobody
nogroup:x:65534:
GROUP
echo "busybox root filesystem ready in $dest" >&2
