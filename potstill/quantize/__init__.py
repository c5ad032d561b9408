"""The quantize stage: schemes and their config blocks (schemes), bits per weight (bits), the
fidelity screen (screen), the per-layer sensitivity map (layer_map); config.py, stage.py."""
