"""Types every package of edgepipe shares: the error family, input specs, output capture.

They sit at the bottom of the dependency graph (exporters, profilers, android_bench and pipeline
all import them; they import nothing of ours), apart from the zoo in `models/`.
"""
