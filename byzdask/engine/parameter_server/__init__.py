"""byzdask.engine.parameter_server"""
