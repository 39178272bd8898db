"""Map outlines the console's charts draw (vendored data; see build_world.py)."""
