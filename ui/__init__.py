"""Streamlit glue shared by the pages: session state, the sidebar, training jobs, cached
loaders and figure builders. The maths and file formats stay in `engine`."""
