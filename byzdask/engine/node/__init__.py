"""byzdask.engine.node"""
