"""The benchmark: the Items API beside a framework-free ceiling, in one run (``make bench``)."""
