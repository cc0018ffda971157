"""byzdask.engine.graph"""
