// Command mandelbrot renders one tile of the Mandelbrot set as a greyscale
// PGM image. A p2pnode example job, written in Go and built for WASI
// preview 1 (see README.md and build.sh); it also builds and runs natively.
//
//	mandelbrot -tx 1 -ty 2 -tiles 4 -size 256 -iter 500
//
// renders tile (1, 2) of a 4x4 grid over the region [-2.2, 1] x [-1.6, 1.6]
// into tile.pgm (size x size pixels), and prints one JSON line with the
// tile's position and the share of its points inside the set.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
)

func main() {
	var (
		tx    = flag.Int("tx", 0, "tile column, from 0")
		ty    = flag.Int("ty", 0, "tile row, from 0")
		tiles = flag.Int("tiles", 4, "tiles per side")
		size  = flag.Int("size", 256, "tile width and height in pixels")
		iter  = flag.Int("iter", 500, "iterations before a point counts as inside")
		out   = flag.String("out", "tile.pgm", "image file to write")
	)
	flag.Parse()
	if *tiles < 1 || *tx < 0 || *ty < 0 || *tx >= *tiles || *ty >= *tiles || *size < 1 || *size > 4096 || *iter < 1 {
		fmt.Fprintln(os.Stderr, "mandelbrot: bad tile, size or iter")
		os.Exit(2)
	}
	const x0, x1, y0, y1 = -2.2, 1.0, -1.6, 1.6
	step := (x1 - x0) / float64(*tiles**size)
	stepY := (y1 - y0) / float64(*tiles**size)
	img := make([]byte, *size**size)
	inside := 0
	for py := range *size {
		ci := y0 + float64(*ty**size+py)*stepY
		for px := range *size {
			cr := x0 + float64(*tx**size+px)*step
			zr, zi := 0.0, 0.0
			n := 0
			for ; n < *iter && zr*zr+zi*zi <= 4; n++ {
				zr, zi = zr*zr-zi*zi+cr, 2*zr*zi+ci
			}
			if n == *iter {
				inside++
				img[py**size+px] = 0
			} else {
				img[py**size+px] = byte(255 - 255*n / *iter)
			}
		}
	}
	f, err := os.Create(*out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mandelbrot:", err)
		os.Exit(1)
	}
	w := bufio.NewWriter(f)
	fmt.Fprintf(w, "P5\n%d %d\n255\n", *size, *size)
	w.Write(img)
	if err := w.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, "mandelbrot:", err)
		os.Exit(1)
	}
	if err := f.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "mandelbrot:", err)
		os.Exit(1)
	}
	line, _ := json.Marshal(map[string]any{"tx": *tx, "ty": *ty, "inside": float64(inside) / float64(*size**size)})
	fmt.Println(string(line))
}
