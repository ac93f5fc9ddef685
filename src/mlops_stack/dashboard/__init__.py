"""The Streamlit dashboard (`mlops serve dashboard`): what the stack's own stores say."""
