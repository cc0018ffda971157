"""byzdask.engine.peer_to_peer"""
