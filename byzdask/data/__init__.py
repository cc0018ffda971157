"""byzdask.data"""
