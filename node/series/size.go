package series

import (
	"errors"
	"math"
	"strconv"
	"strings"
)

// sizeUnits maps a size suffix to its multiplier.
var sizeUnits = map[string]uint64{
	"":    1,
	"B":   1,
	"KB":  1000,
	"MB":  1000 * 1000,
	"GB":  1000 * 1000 * 1000,
	"TB":  1000 * 1000 * 1000 * 1000,
	"KiB": 1 << 10,
	"MiB": 1 << 20,
	"GiB": 1 << 30,
	"TiB": 1 << 40,
}

var errSize = errors.New("want a size: a whole number of bytes, optionally with a unit (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB), e.g. 64MiB")

// ParseSize parses a human size such as "64MiB", "4 MB" or "1024" into
// bytes. Units are case-sensitive; only whole numbers are accepted.
func ParseSize(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, errSize
	}
	n, err := strconv.ParseUint(s[:i], 10, 64)
	if err != nil {
		return 0, errSize
	}
	mult, ok := sizeUnits[strings.TrimSpace(s[i:])]
	if !ok {
		return 0, errSize
	}
	if n > math.MaxUint64/mult {
		return 0, errors.New("size overflows 64 bits")
	}
	return n * mult, nil
}
