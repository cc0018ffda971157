"""byzdask.engine"""
