"""Outputter for hx-ops progress messages: print the message text as it is.

Runners fire ``progress`` events carrying ``{"message": ..., "outputter":
"hx_text"}``; salt-run would otherwise print them as a nested dict. With
``--out=json`` (or any explicit ``--out``) the event is printed as data.

CLI Example:

.. code-block:: bash

    salt-run hx_report.health
"""

__virtualname__ = "hx_text"


def __virtual__():
    return __virtualname__


def output(data, **kwargs):  # pylint: disable=unused-argument
    """Return the ``message`` of a progress event, else the data as text."""
    if isinstance(data, dict):
        event = data.get("event", data)
        if isinstance(event, dict) and "message" in event:
            return str(event["message"])
    return str(data)
