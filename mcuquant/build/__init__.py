"""Firmware build stage: PlatformIO projects, toolchains."""
