"""`geowarn demo`: the whole pipeline on one machine, on simulated devices, told as a story."""
