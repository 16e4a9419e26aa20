"""Pure warning science: numpy/scipy methods over packed series, no I/O and no engine state
(rainfall, displacement, failure time, water level, pollution, data quality, hysteresis,
fusion, levels). See docs/methods.md for the sources."""
