#!/bin/sh
# check_lv2_bundle.sh BUNDLE URI: the bundle's Turtle parses (serdi), validates (lv2_validate
# prints "Found 0 errors"; its exit status is unreliable), lilv loads it without a word on
# stderr (lv2info), and the binary exports lv2_descriptor and nothing else.
set -u
bundle=$1
uri=$2
for tool in serdi lv2_validate lv2info nm; do
    if ! command -v $tool >/dev/null 2>&1; then
        echo "SKIP: $tool not installed (packages serdi, lv2-dev, sordi, lilv-utils, binutils)"
        exit 77
    fi
done
fail=0
ttls=$(find "$bundle" -name '*.ttl' | sort)
for f in $ttls; do
    if ! serdi -i turtle -o ntriples "$f" >/dev/null; then
        echo "FAIL: serdi rejects $f"
        fail=1
    fi
done
# shellcheck disable=SC2086
summary=$(lv2_validate $ttls 2>&1 | grep '^Found ')
echo "lv2_validate: $summary"
case $summary in
"Found 0 errors"*) ;;
*)
    echo "FAIL: lv2_validate"
    lv2_validate $ttls 2>&1 | grep -v '^Skipping' | head -40
    fail=1
    ;;
esac
parent=$(cd "$bundle/.." && pwd)
err=$(LV2_PATH="$parent:/usr/lib/lv2" lv2info "$uri" 2>&1 >/dev/null)
if [ -n "$err" ]; then
    echo "FAIL: lv2info printed on stderr:"
    echo "$err"
    fail=1
fi
if ! LV2_PATH="$parent" lv2info "$uri" | grep -q "Has latency: *no"; then
    echo "FAIL: lv2info does not show the plugin (or it reports latency)"
    fail=1
fi
exports=$(nm -D --defined-only "$bundle"/*.so | awk '{print $3}' | sort | tr '\n' ' ')
if [ "$exports" != "lv2_descriptor " ]; then
    echo "FAIL: exported symbols: $exports"
    fail=1
fi
[ $fail -eq 0 ] && echo "bundle OK: $(echo "$ttls" | wc -l) Turtle files"
exit $fail
