"""Task metrics, calibration, loyalty and statistics. Pure functions of predictions: metrics never
load models. Each documents its formula and a reference."""
