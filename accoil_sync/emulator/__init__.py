"""Local stand-ins for the Segment, Intercom and HubSpot APIs, for the demo, tests and benchmarks."""

from accoil_sync.emulator.app import PROFILES, Emulator
from accoil_sync.emulator.common import Faults
from accoil_sync.emulator.server import EmulatorServer

__all__ = ["PROFILES", "Emulator", "EmulatorServer", "Faults"]
