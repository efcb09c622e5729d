"""netadapt"""
