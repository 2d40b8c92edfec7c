/**
 * Client-side TLS for server-to-server traffic (Raft, forwarding): channel credentials whose
 * certificate, key and CA follow the `--peer-tls-*` files as they are replaced, through grpc-js's
 * CertificateProvider interface (`experimental.createCertificateProviderChannelCredentials`):
 * each new connection uses the files in force when it is made; open connections keep theirs.
 */
import { experimental, type ChannelCredentials } from '@grpc/grpc-js';
import { FileReloader, type ReloadOutcome } from './file-reloader.js';
import type { AuthLogger } from './logger.js';
import { loadTlsMaterial, type TlsFiles, type TlsMaterial } from './tls-material.js';

type CaListener = experimental.CaCertificateUpdateListener;
type IdentityListener = experimental.IdentityCertificateUpdateListener;

/** A CertificateProvider fed with checked TLS material; listeners get the current value at once. */
export class MaterialCertificateProvider implements experimental.CertificateProvider {
  private readonly caListeners = new Set<CaListener>();
  private readonly identityListeners = new Set<IdentityListener>();

  constructor(private material: TlsMaterial) {}

  update(material: TlsMaterial): void {
    this.material = material;
    for (const listener of this.caListeners) listener({ caCertificate: material.caPem });
    for (const listener of this.identityListeners) listener({ certificate: material.certPem, privateKey: material.keyPem });
  }

  addCaCertificateListener(listener: CaListener): void {
    this.caListeners.add(listener);
    const caCertificate = this.material.caPem;
    process.nextTick(() => listener({ caCertificate }));
  }
  removeCaCertificateListener(listener: CaListener): void {
    this.caListeners.delete(listener);
  }
  addIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.add(listener);
    const { certPem: certificate, keyPem: privateKey } = this.material;
    process.nextTick(() => listener({ certificate, privateKey }));
  }
  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.delete(listener);
  }
}

export class PeerCredentials {
  private constructor(
    readonly credentials: ChannelCredentials,
    private readonly reloader: FileReloader<TlsMaterial>,
  ) {}

  /** Loads and checks the files (throwing if bad), then follows them. */
  static async start(options: { files: TlsFiles; logger: AuthLogger; pollIntervalMs?: number }): Promise<PeerCredentials> {
    let provider: MaterialCertificateProvider | undefined;
    const reloader = await FileReloader.start({
      name: 'peer TLS certificate',
      paths: [options.files.certFile, options.files.keyFile, options.files.caFile],
      load: () => loadTlsMaterial(options.files),
      apply: (material) => {
        if (provider === undefined) provider = new MaterialCertificateProvider(material);
        else provider.update(material);
      },
      logger: options.logger,
      ...(options.pollIntervalMs === undefined ? {} : { pollIntervalMs: options.pollIntervalMs }),
    });
    const credentials = experimental.createCertificateProviderChannelCredentials(provider!, provider!);
    return new PeerCredentials(credentials, reloader);
  }

  reload(): Promise<ReloadOutcome> {
    return this.reloader.reload();
  }

  close(): void {
    this.reloader.close();
  }
}
