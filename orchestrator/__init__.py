"""The reconcile loop that runs this node's assigned replicas on Docker, with probes and metering."""
