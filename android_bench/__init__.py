"""On-device profiling over adb (not built yet)."""
