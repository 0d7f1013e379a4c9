# Start echogate with `twistd -ny tac/echogate.tac`; settings come from the
# environment (ECHOGATE_<KEY>) and ECHOGATE_CONFIG, as for `twistd echogate`.
from twisted.application import service

from echogate.service import Options, makeService

options = Options()
options.parseOptions([])
application = service.Application("echogate")
makeService(options).setServiceParent(application)
