#!/bin/sh
# make demo: the lesson's steps on small arrays, each with a line saying what it shows and what
# to expect. Usage: scripts/demo.sh DSK DIR
set -e
DSK=$1
D=$2
rm -rf "$D" && mkdir -p "$D"
step() { printf '\n== %s\n' "$1"; }
run() { printf '$ dsk %s\n' "$*"; "$DSK" "$@"; }

step "1. An array of ones, 1000 x 4000 in 1000 x 1000 chunks: 32 MB logical, a few hundred bytes on disk (the ones are the fill value)"
run create ones "$D/ones.zarr" --shape 1000,4000 --chunks 1000,1000
run info "$D/ones.zarr"

step "2. Random normal numbers, 160 MB, written chunk by chunk on all cores; the corner of the array as CSV"
run create random "$D/x.zarr" --shape 5000,4000 --chunks 1000,1000 --dist normal --seed 42 --dimension-names time,space
run export "$D/x.zarr" --slice '0:3, 0:4' --format csv

step "3. The plan before the run (--explain): stages, tasks, projected memory; then cos(x)**2 computed"
run transform "$D/x.zarr" "$D/cos2.zarr" --expr 'cos(x)**2' --explain
run transform "$D/x.zarr" "$D/cos2.zarr" --expr 'cos(x)**2'

step "4. The lesson's calculation on 6.4 GB of ones, never stored: ones are constants, so the mean is known when planned, no element computed: expect exactly 1.0"
run eval '(ones((200000, 4000), chunks=(1000, 1000)) * ones((200000, 4000), chunks=(1000, 1000))[::-1, ::-1]).mean()' --memory 1GiB

step "5. (cos(ones)**2).mean(axis=1), first rows: expect cos(1)**2 = 0.2919265817264289 on every row"
run eval '(cos(ones((200000, 4000), chunks=(1000, 1000)))**2).mean(axis=1)[0:3]' --memory 1GiB --format csv

step "6. Row means of cos(x)**2 into a Zarr array, with a saved report; one number for scripts: expect about (1 + exp(-2))/2 = 0.5677"
run reduce "$D/cos2.zarr" "$D/row_means.zarr" --op mean --axis 1 --report "$D/report.html"
run reduce "$D/cos2.zarr" --op mean --json

step "7. Pictures: the plan's graph, the row means as a line plot, x as a heatmap"
run graph '(x * x[::-1, ::-1]).mean()' x="$D/x.zarr" -o "$D/graph.svg"
run plot "$D/row_means.zarr" -o "$D/row_means.png"
run plot "$D/x.zarr" -o "$D/x.png"

step "8. Rechunk to tall chunks (5000, 10) under a 256 MiB bound: the plan says how (one pass over bands of source chunks here; two through the work directory when bands do not fit)"
run rechunk "$D/x.zarr" "$D/tall.zarr" --chunks 5000,10 --memory 256MiB --explain
run rechunk "$D/x.zarr" "$D/tall.zarr" --chunks 5000,10 --memory 256MiB

step "9. A dataset xarray opens: the arrays above as variables of one Zarr group"
run transform "$D/x.zarr" "$D/ds.zarr/x" --expr x
run reduce "$D/x.zarr" "$D/ds.zarr/x_mean" --op mean --axis 1
run ls "$D/ds.zarr"

printf '\nOpen %s/graph.svg, report.html, row_means.png and x.png; python -c "import xarray; print(xarray.open_zarr(\"%s/ds.zarr\"))" shows the dataset.\n' "$D" "$D"
