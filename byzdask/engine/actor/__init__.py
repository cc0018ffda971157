"""byzdask.engine.actor"""
