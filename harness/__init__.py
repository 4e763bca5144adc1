"""harness: build one workload as a VM, containers and unikernels, boot each, measure."""

__version__ = "0.1.0"
