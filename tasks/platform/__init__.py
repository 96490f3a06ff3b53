"""The tools around the loop, apart from its stages: the ``airloop`` command line (``cli``), the
local stack (``stack``), the simulated upstream systems (``simulate``), the traffic player
(``traffic``), the demo (``demo``), file validation by hand (``file_validation``) and the Airflow
REST client (``airflow_client``). The stages never import this package."""
