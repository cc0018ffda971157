"""byzdask.experiments"""
