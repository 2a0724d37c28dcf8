#!/bin/sh
# Every manual page passes mandoc's linter at warning level, and svcproxy(8)
# documents every long option `svcproxy --help` lists.
: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${top_builddir:=$top_srcdir}"
status=0
command -v mandoc >/dev/null || { echo "mandoc missing (apt-get install mandoc)"; exit 1; }
for page in "$top_srcdir"/man/*.[158]; do
	out=$(mandoc -Tlint -W warning "$page" 2>&1)
	if [ -n "$out" ]; then
		echo "not ok - $page:"
		echo "$out"
		status=1
	else
		echo "ok - $(basename "$page") lints clean"
	fi
done
# An option added to the command line but not to the manual fails here.
for opt in $("$top_builddir/svcproxy" --help | grep -oE -- '--[a-z][a-z0-9-]+' | sort -u); do
	# The page escapes every hyphen: --proxy-mode is \-\-proxy\-mode.
	escaped=$(printf '%s' "$opt" | sed 's/-/\\\\-/g')
	if ! grep -q -- "$escaped" "$top_srcdir/man/svcproxy.8"; then
		echo "not ok - svcproxy(8) does not document $opt"
		status=1
	fi
done
[ $status = 0 ] && echo "ok - svcproxy(8) documents every option of svcproxy --help"
exit $status
