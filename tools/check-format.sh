#!/bin/sh
# Checks that C sources follow the checked-in .clang-format (exit 77 = skipped: no clang-format).
top=${1:-.}
fmt=$(command -v clang-format-15 || command -v clang-format-14 || command -v clang-format)
if [ -z "$fmt" ]; then
    echo "SKIP: clang-format is not installed"
    exit 77
fi
cd "$top" || exit 1
files=$(git ls-files '*.c' '*.h' 2>/dev/null)
[ -n "$files" ] || files=$(find engine tools tests bench -name '*.[ch]')
# shellcheck disable=SC2086
if "$fmt" --dry-run -Werror $files; then
    echo "format: $(echo "$files" | wc -w) files clean"
    exit 0
fi
echo "format: run '$fmt -i' on the files above"
exit 1
