"""Files pagbench reads and writes: paths and atomic writes, fingerprints, integrity seals, pinned downloads, trust flags and declared assets."""
