"""The MLX teacher: a fast BLAS on Linux CPU (backend), the BERT encoder (bert), checkpoint
loading (checkpoint), quantized layers at load time (quantized), `Teacher` (teacher) and
`potstill encode` (encode)."""
