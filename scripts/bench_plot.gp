# Throughput against ranks, one line per method; called by scripts/bench.sh
# with dat, png and title set (gnuplot -e).
set terminal pngcairo size 720,440 font ",10" noenhanced
set output png
set title "mst-bench: ".title
set xlabel "ranks"
set ylabel "GiB/s (median)"
set key outside right
set grid
set logscale x 2
set xtics (1, 2, 4, 8, 16)
set yrange [0:*]
plot for [c=2:6] dat using 1:c with linespoints lw 2 pt c title columnhead(c)
