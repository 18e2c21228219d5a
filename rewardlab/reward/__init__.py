"""Reward programs: vetting, sandboxed execution and checks."""

from rewardlab.reward.program import RewardProgram, RewardProgramError, RewardRuntimeError
from rewardlab.reward.sandbox import Finding

__all__ = ["Finding", "RewardProgram", "RewardProgramError", "RewardRuntimeError"]
