"""Running what the chain assigns to this node: the reconcile loop over a container engine
(Docker), probes, restart back-off, volumes, image pulls and their garbage collection, the
replicas' firewall and metering; and the services that feed and expose it: workloads (this
node's finalized assignments as replica specs), logs, usage reports, disk pressure, endpoint
advertisements, the ingress proxy and DNS. Addresses are classified once, in `addresses`."""
