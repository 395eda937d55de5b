#!/bin/sh
# Fails when an engine source includes a module above its own in the documented dependency
# order (docs/design.md, "Layers"): a file in layer N may include only layers <= N.
# Usage: tools/check-layering.sh ENGINE_SRC_DIR
set -eu
src=${1:?usage: check-layering.sh engine/src}
# The order, lowest first. One line per layer; modules on one line may not include each other.
layers='core
backend
format
labels audio nn
vqvae
prior
model
pipeline'
rank_of() {
    echo "$layers" | awk -v m="$1" '{ for (i = 1; i <= NF; i++) if ($i == m) { print NR; exit } }'
}
bad=0
for dir in "$src"/*/; do
    mod=$(basename "$dir")
    r=$(rank_of "$mod")
    if [ -z "$r" ]; then
        echo "check-layering: module '$mod' is not in the layer list (docs/design.md)"
        bad=1
        continue
    fi
    for f in $(find "$dir" -name '*.[ch]' -o -name '*.cu' -o -name '*.cuh' -o -name '*.def'); do
        grep -n '^#include "[a-z_]*/' "$f" | while IFS= read -r line; do
            inc=$(echo "$line" | sed 's/^[0-9]*:#include "\([a-z_]*\)\/.*/\1/')
            [ "$inc" = "$mod" ] && continue
            [ "$inc" = encore ] && continue
            ri=$(rank_of "$inc")
            if [ -z "$ri" ] || [ "$ri" -gt "$r" ] || { [ "$ri" -eq "$r" ] && [ "$inc" != "$mod" ]; }; then
                echo "${f#$src/}:${line%%:*}: '$mod' may not include '$inc/' (see docs/design.md, Layers)"
                echo x >>"${TMPDIR:-/tmp}/layering.$$"
            fi
        done
    done
done
if [ -e "${TMPDIR:-/tmp}/layering.$$" ]; then rm -f "${TMPDIR:-/tmp}/layering.$$"; bad=1; fi
[ "$bad" -eq 0 ] && echo "check-layering: every include follows the layer order"
exit "$bad"
