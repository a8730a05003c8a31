import type { SnapshotDetail } from '../types';
import { segments, usedFraction } from './disk-segments';
import { formatBytes } from '../format';

/** The disk layout of a volume snapshot drawn as partitions with used and free space, then as a table. */
export function DiskLayout(props: { snapshot: SnapshotDetail }) {
  const layout = props.snapshot.layout;
  if (!layout) return null;
  const parts = segments(layout, props.snapshot.stats?.bytesRead);
  return (
    <div class="disk">
      <div class="disk-caption">
        {formatBytes(layout.size)} {layout.kind === 'block-device' ? 'block device' : 'image'}, partition table: {layout.partitionTable.type}, sector {layout.sectorSize} B
      </div>
      <div class="disk-bar" role="img" aria-label="disk layout">
        {parts.map((segment) => (
          <div
            key={segment.key}
            class={`disk-part ${segment.free ? 'disk-part-free' : ''} ${segment.mode === 'exact' ? 'disk-part-exact' : ''}`}
            style={{ flexGrow: segment.size, flexBasis: 0 }}
            title={`${segment.label}: ${formatBytes(segment.size)}${segment.used !== undefined ? `, ${formatBytes(segment.used)} used` : ''}${segment.note ? ` (${segment.note})` : ''}`}
            data-partition={segment.key}
          >
            <div class="disk-used" style={{ width: `${(usedFraction(segment) * 100).toFixed(1)}%` }} />
            <div class="disk-label">
              <strong>{segment.label}</strong>
              <span>{segment.filesystem ?? (segment.free ? '' : 'unknown')}</span>
              <span>{formatBytes(segment.size)}</span>
            </div>
          </div>
        ))}
      </div>
      <div class="disk-legend">
        <span><i class="swatch swatch-used" /> used (stored)</span>
        <span><i class="swatch swatch-free" /> free (not stored, restores as zeros)</span>
        <span><i class="swatch swatch-exact" /> imaged exactly</span>
      </div>
      <table class="table">
        <thead>
          <tr><th>Part</th><th>Filesystem</th><th class="num">Start</th><th class="num">Size</th><th class="num">Used</th><th>Mode</th><th>Note</th></tr>
        </thead>
        <tbody>
          {parts.filter((s) => !s.free).map((segment) => (
            <tr key={segment.key}>
              <td>{segment.label}</td>
              <td>{segment.filesystem ?? '–'}</td>
              <td class="num">{formatBytes(segment.offset)}</td>
              <td class="num">{formatBytes(segment.size)}</td>
              <td class="num">{segment.used !== undefined ? `${formatBytes(segment.used)} (${Math.round((segment.used / segment.size) * 100)}%)` : '–'}</td>
              <td>{segment.mode ?? '–'}</td>
              <td class="muted">{segment.note ?? ''}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
