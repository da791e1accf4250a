"""The data plane: splits, mirrors and measures traffic to model servers."""
