"""byzdask.engine.actor: actor references, channels, and backends as Dask cluster specs."""

from byzdask.engine.actor.channels import (
    Channel,
    ChannelHost,
    ChannelInfo,
    Mailbox,
    Message,
    edges_of,
    open_channel,
)
from byzdask.engine.actor.ref import ActorRef

__all__ = [
    "ActorRef",
    "Channel",
    "ChannelHost",
    "ChannelInfo",
    "Mailbox",
    "Message",
    "edges_of",
    "open_channel",
]
