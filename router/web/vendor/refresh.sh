#!/usr/bin/env bash
# Re-vendor marked, DOMPurify and uPlot from the npm registry:
#   bash router/web/vendor/refresh.sh [MARKED] [DOMPURIFY] [UPLOT]
# Without arguments, the versions recorded in README.md are fetched again (the files must not change).
# With versions, those are fetched; then update the table in README.md and run the tests (tests/web).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
recorded() { sed -n "s/^| $1 | \([0-9][0-9.]*\) |.*/\1/p" "$here/README.md"; }
marked=${1:-$(recorded marked)}
dompurify=${2:-$(recorded dompurify)}
uplot=${3:-$(recorded uplot)}
[[ -n $marked && -n $dompurify && -n $uplot ]] || { echo "refresh.sh: no versions given or recorded in README.md" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
npm init -y >/dev/null
# --ignore-scripts: nothing from the registry runs here; we only copy files out.
npm install --no-audit --no-fund --ignore-scripts "marked@$marked" "dompurify@$dompurify" "uplot@$uplot" >/dev/null
cp node_modules/marked/lib/marked.esm.js "$here/marked.esm.js"
cp node_modules/marked/LICENSE "$here/marked.LICENSE.md"
cp node_modules/dompurify/dist/purify.es.mjs "$here/purify.es.mjs"
cp node_modules/dompurify/LICENSE "$here/dompurify.LICENSE"
cp node_modules/dompurify/LICENSE-MPL "$here/dompurify.LICENSE-MPL"
cp node_modules/uplot/dist/uPlot.iife.min.js "$here/uPlot.iife.min.js"
cp node_modules/uplot/dist/uPlot.min.css "$here/uPlot.min.css"
cp node_modules/uplot/LICENSE "$here/uplot.LICENSE"
cd "$here"
sha256sum marked.esm.js purify.es.mjs uPlot.iife.min.js uPlot.min.css
echo "vendored marked $marked, dompurify $dompurify and uplot $uplot; record them (and the sums) in README.md" >&2
