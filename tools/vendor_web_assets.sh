#!/usr/bin/env bash
# Refresh the dashboard's third-party web assets from their published npm packages (hospital
# networks are closed: the dashboard serves them itself, no CDN). Needs node/npm and the npm
# registry; the files it writes are committed, so installing vitaltwin needs neither.
set -euo pipefail
HTMX=2.0.11   # htmx.org, 0BSD
UPLOT=1.6.32  # uplot, MIT
dest="$(cd "$(dirname "$0")/.." && pwd)/src/vitaltwin/dashboard/static/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent "htmx.org@$HTMX" "uplot@$UPLOT" >/dev/null
mkdir htmx uplot
tar xzf "htmx.org-$HTMX.tgz" -C htmx
tar xzf "uplot-$UPLOT.tgz" -C uplot
mkdir -p "$dest"
cp htmx/package/dist/htmx.min.js "$dest/htmx.min.js"
cp htmx/package/LICENSE "$dest/htmx.LICENSE"
cp uplot/package/dist/uPlot.iife.min.js "$dest/uPlot.iife.min.js"
cp uplot/package/dist/uPlot.min.css "$dest/uPlot.min.css"
cp uplot/package/LICENSE "$dest/uPlot.LICENSE"
{
  echo "# Vendored web assets (written by tools/vendor_web_assets.sh; do not edit)"
  echo
  echo "| file | package | licence | sha256 |"
  echo "|---|---|---|---|"
  for f in htmx.min.js htmx.LICENSE; do
    echo "| $f | htmx.org $HTMX (npm) | 0BSD | $(sha256sum "$dest/$f" | cut -c1-64) |"
  done
  for f in uPlot.iife.min.js uPlot.min.css uPlot.LICENSE; do
    echo "| $f | uplot $UPLOT (npm) | MIT | $(sha256sum "$dest/$f" | cut -c1-64) |"
  done
} > "$dest/README.md"
echo "vendored htmx.org $HTMX and uplot $UPLOT into $dest"
