"""Beyond accuracy: calibration, corruptions, attacks, Grad-CAM, and the suite 06_analysis runs."""
