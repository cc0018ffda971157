"""Federated averaging with robust aggregation (``--protocol fedavg``)."""

from byzdask.engine.fedavg.fedavg import FedAvg, local_update, sample_clients

__all__ = ["FedAvg", "local_update", "sample_clients"]
